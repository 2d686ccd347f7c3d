"""deai.ledger"""

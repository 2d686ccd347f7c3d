"""deai.node"""

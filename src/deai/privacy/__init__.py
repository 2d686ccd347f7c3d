"""deai.privacy"""

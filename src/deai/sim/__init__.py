"""deai.sim"""

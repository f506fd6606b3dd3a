"""stream/triggers"""

"""stream/personas"""

"""stream/decisions"""

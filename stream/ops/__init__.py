"""stream/ops"""

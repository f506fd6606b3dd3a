"""stream/state/redis"""

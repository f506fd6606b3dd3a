"""stream/report"""

"""stream/engine"""

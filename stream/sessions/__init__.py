"""stream/sessions"""

"""stream/synth"""

"""agents/bpf"""

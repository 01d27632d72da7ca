"""pipeline/sink"""

"""agents/audit"""

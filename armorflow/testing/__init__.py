"""armorflow/testing"""

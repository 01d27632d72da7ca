"""armorflow/render"""

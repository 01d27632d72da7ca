"""armorflow.operator: drives VarmorPolicy / VarmorClusterPolicy status and the pipeline's
modeling windows (see docs/operator.md)."""

"""Training: the objective, the train state and step, the mesh, checkpoints."""

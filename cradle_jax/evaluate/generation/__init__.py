"""Generated cells: artifact-free cells from the prior, counterfactuals of real cells,
basal latents, and the AnnData they are written as."""

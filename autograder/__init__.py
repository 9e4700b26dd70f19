"""Build, check and grade the deep generative model labs."""

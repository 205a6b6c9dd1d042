"""playground: the CLI that builds the golden image and runs playgrounds."""

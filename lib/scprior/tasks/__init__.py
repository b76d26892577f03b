"""Per paper task: splits, training recipes, metrics. Uses data, knowledge and models; not plotting."""

"""Developer tools: the end-to-end demo and the local Redis it runs on when none answers."""

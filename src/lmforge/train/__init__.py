"""Training: the one loop every model family uses, and the components it composes."""

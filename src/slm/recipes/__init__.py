"""One module per seed system. A recipe adds only what is its own (a data builder, a transform, a loss, a
composition) and trains, generates and evaluates through the shared parts."""

"""metre: software-development metrics over Git repositories, fresh within seconds of a push."""

"""notmnist: the library behind the pipeline's DVC stages (stages/) and the `notmnist` command."""

"""Built-in task plugins: each module here is one plugin, named after the module."""

"""Built-in optimizer plugins: each module here is one plugin, named after the module."""

"""The ground layer, importing nothing else of this project: image I/O and value ranges, configs,
checkpoint files, script scaffolding and user errors, pictures, the CPU allocator setting."""

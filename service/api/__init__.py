"""The web layer: thin routes that translate HTTP to calls on the core and back."""

"""nn.Module faces of the ops (drop-ins for the modules people already use)."""

"""Jobs: end-to-end runs that chain sweep -> store -> analysis -> figures (the main job lives here)."""

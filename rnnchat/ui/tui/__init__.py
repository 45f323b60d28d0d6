"""The Textual chat app (`rnnchat chat`)."""

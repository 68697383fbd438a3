"""Starting and stopping the EmoStream mesh on one machine."""

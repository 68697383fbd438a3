"""Generated from protos/emostream/v1 by protos/build.py; do not edit."""

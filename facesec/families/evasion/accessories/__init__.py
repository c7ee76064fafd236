"""Physically realizable accessories: regions from landmarks (eyeglass frames, stickers, face masks)."""

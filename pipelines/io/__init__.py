"""The file layer: reading, decoding, writing and encoding records, coders, spills and staged outputs."""

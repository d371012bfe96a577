"""The file layer: input files, reading and writing records on Beam, coders, spills, on-disk
shuffles and staged outputs."""

"""The planar-3D res-u-net: encoder, decoder, loss, parameter summary and memory estimate."""

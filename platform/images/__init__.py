"""Image decoding for datasets: fast reduced-size decode, orientation, RGB conversion, resize."""

"""attribench-smerf: SMERF (Kim, Plumb, Talwalkar 2022): TextBox images with known model reasoning."""

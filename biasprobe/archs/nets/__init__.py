"""Built-in architectures, one module per family, each registering itself with one ``@register_arch`` call.

The registry lists them from their source without importing them (so listing needs no torch) and imports a
module when one of its nets is first built; importing this package imports none of them.
"""

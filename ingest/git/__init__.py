"""Reading git repositories: one module per git concept, raw objects in, plain values out.

dulwich's object model parses more than metre needs and refuses dates git accepts, so these
modules read raw objects and use dulwich only through its public API.
"""

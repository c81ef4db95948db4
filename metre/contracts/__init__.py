"""The contracts every part of metre shares: the event schema, the bus protocol and
the retry policy. They import nothing of metre, so any layer may import them."""

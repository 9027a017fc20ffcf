"""Inbound messages: the inbox, the pipeline and the identity stage."""

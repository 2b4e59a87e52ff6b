"""Built-in fleet files shipped with clusterplane (package data)."""

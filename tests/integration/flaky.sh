#!/bin/sh
# Fails on its first start (exit 1), serves from the second on.
if [ ! -e "$MARK" ]; then
	: > "$MARK"
	exit 1
fi
exec socketnaut-hello --socket "$1"

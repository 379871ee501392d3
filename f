
10


3

two
2

one
1


from notmnist.cli import main

main()

from notmnist.tools.cli import main

main()

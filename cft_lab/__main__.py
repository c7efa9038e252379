from cft_lab.app import main

main()

from cdm_exporter.cli import main

main()

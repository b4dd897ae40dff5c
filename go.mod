module github.com/mountain-sar/sar

go 1.26.8

require github.com/uber/h3-go/v4 v4.4.1

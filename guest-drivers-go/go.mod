module dtm-host/guest-drivers-go

go 1.26

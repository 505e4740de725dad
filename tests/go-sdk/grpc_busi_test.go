package gosdk

import (
	"context"
	"database/sql"
	"time"

	"github.com/dtm-labs/client/dtmcli"
	"github.com/dtm-labs/client/dtmcli/dtmimp"
	"github.com/dtm-labs/client/dtmgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The gRPC business service "busi.Busi": the same branches as the HTTP one, each taking the
// request as a google.protobuf.Struct and answering google.protobuf.Empty.

func grpcURL(method string) string {
	return busiGrpc + "/busi.Busi/" + method
}

// pb is req as the gRPC branches' request message.
func pb(req *Req) *structpb.Struct {
	s, err := structpb.NewStruct(map[string]any{
		"amount": req.Amount, "from": req.From, "to": req.To, "store": req.Store,
	})
	must(err)
	return s
}

func fromPb(s *structpb.Struct) *Req {
	req := &Req{}
	dtmimp.MustRemarshal(s.AsMap(), req)
	return req
}

type grpcHandler func(ctx context.Context, req *Req) error

func grpcRecord(ctx context.Context, name string) Call {
	md, _ := metadata.FromIncomingContext(ctx)
	h := map[string]string{}
	for k, v := range md {
		if len(v) > 0 {
			h[k] = v[0]
		}
	}
	return Call{Name: name, Gid: h["dtm-gid"], BranchID: h["dtm-branch_id"], Op: h["dtm-op"], Headers: h, Start: time.Now()}
}

func grpcBranch(name string) grpcHandler {
	return func(ctx context.Context, req *Req) error {
		c := grpcRecord(ctx, name)
		bb, err := dtmgrpc.BarrierFromGrpc(ctx)
		if err == nil {
			err = busiWork(ctx, name, bb, req)
		}
		c.End = time.Now()
		record(c)
		return err
	}
}

func grpcTccNested(ctx context.Context, req *Req) error {
	record(grpcRecord(ctx, "TransInTccNested"))
	tcc, err := dtmgrpc.TccFromGrpc(ctx)
	if err == nil {
		err = tcc.CallBranch(pb(req), grpcURL("TransInTry"), grpcURL("TransInConfirm"), grpcURL("TransInCancel"), &emptypb.Empty{})
	}
	return err
}

func grpcQueryPrepared(store string) grpcHandler {
	return func(ctx context.Context, _ *Req) error {
		record(grpcRecord(ctx, "QueryPrepared"))
		bb, err := dtmgrpc.BarrierFromGrpc(ctx)
		if err == nil {
			err = queryPrepared(bb, store)
		}
		return err
	}
}

func grpcXa(name, store string) grpcHandler {
	return func(ctx context.Context, req *Req) error {
		record(grpcRecord(ctx, name))
		return xaBranch(name, store, req, func(conf dtmcli.DBConf, local func(*sql.DB) error) error {
			return dtmgrpc.XaLocalTransaction(ctx, conf, func(db *sql.DB, xa *dtmgrpc.XaGrpc) error {
				return local(db)
			})
		})
	}
}

func registerBusiGrpc(s *grpc.Server) {
	handlers := map[string]grpcHandler{
		"TransInTccNested":      grpcTccNested,
		"QueryPreparedMysql":    grpcQueryPrepared("mysql"),
		"QueryPreparedPostgres": grpcQueryPrepared("postgres"),
		"QueryPreparedRedis":    grpcQueryPrepared("redis"),
		// an XA branch's URL is also its commit and rollback: the store is in the method's name
		"XaTransOutMysql":    grpcXa("XaTransOut", "mysql"),
		"XaTransOutPostgres": grpcXa("XaTransOut", "postgres"),
		"XaTransInMysql":     grpcXa("XaTransIn", "mysql"),
		"XaTransInPostgres":  grpcXa("XaTransIn", "postgres"),
	}
	for _, name := range []string{"TransOut", "TransOutRevert", "TransIn", "TransInRevert",
		"TransOutTry", "TransOutConfirm", "TransOutCancel", "TransInTry", "TransInConfirm", "TransInCancel",
		"TransInNestedConfirm", "TransInNestedCancel"} {
		handlers[name] = grpcBranch(name)
	}
	desc := grpc.ServiceDesc{ServiceName: "busi.Busi", HandlerType: (*any)(nil)}
	for name, h := range handlers {
		desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: name, Handler: unary(name, h)})
	}
	s.RegisterService(&desc, struct{}{})
}

// unary adapts h to grpc-go's method handler; dtm's FAILURE and ONGOING become Aborted and
// FailedPrecondition, as the SDK's DtmError2GrpcError maps them.
func unary(name string, h grpcHandler) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := &structpb.Struct{}
		if err := dec(in); err != nil {
			return nil, err
		}
		call := func(ctx context.Context, req any) (any, error) {
			err := h(ctx, fromPb(req.(*structpb.Struct)))
			if err != nil {
				return nil, dtmgrpc.DtmError2GrpcError(err)
			}
			return &emptypb.Empty{}, nil
		}
		if interceptor == nil {
			return call(ctx, in)
		}
		return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/busi.Busi/" + name}, call)
	}
}
